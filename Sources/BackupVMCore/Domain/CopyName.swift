/// The name of a copy's own file or LV (`restore --as NEW`): the VM's name replaced by NEW where it
/// stands as a word of its own (not next to a letter or digit), else NEW put in front. Only a file's
/// or LV's own name is ever passed here, never a path: a VM named `lib` must not turn `/var/lib` into
/// `/var/NEW`, nor `a` turn `data-a.raw` into `dbtb-b.rbw`.
enum CopyName {
    static func renamed(_ name: String, from old: String, to new: String) -> String {
        var out = ""
        var replaced = false
        var i = name.startIndex
        while i < name.endIndex {
            if !old.isEmpty, name[i...].hasPrefix(old) {
                let end = name.index(i, offsetBy: old.count)
                let before = i == name.startIndex ? nil : name[name.index(before: i)]
                let after = end == name.endIndex ? nil : name[end]
                if !isWordCharacter(before) && !isWordCharacter(after) {
                    out += new
                    replaced = true
                    i = end
                    continue
                }
            }
            out.append(name[i])
            i = name.index(after: i)
        }
        return replaced ? out : new + "-" + name
    }

    private static func isWordCharacter(_ c: Character?) -> Bool {
        guard let c else { return false }
        return c.isASCII && (c.isLetter || c.isNumber)
    }
}
