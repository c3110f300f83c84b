import Foundation

/// The LVM side of a restore: what LVM says before anything is touched, the command that makes a new
/// LV beside its target, the swap by lvrename and its undo, and the removal of our new or replaced
/// LVs (never anyone else's: BackupNames.isOurRestoreLV). Every value is quoted.
extension LVM {
    /// Facts of the LVs a restore would replace (missing from the answer: no such LV) and of the
    /// volume groups it writes into (missing: no such VG). One line per name, by its index.
    public func restoreFacts(volumes: [VolumeName], groups: [String]) throws(RemoteError) -> (
        volumes: [VolumeName: VolumeFacts], groups: [String: GroupFacts]
    ) {
        let lvs = volumes.enumerated().map { i, v in
            """
            x=$(lvs --noheadings --nosuffix --units b --separator '|' -o \(VolumeFacts.fields) \
            \(ShellQuote.quote(v.fullName)) 2>/dev/null | head -n 1 || true); printf 'lv\\t%d\\t%s\\n' \(i) "$x"
            """
        }
        let markers =
            "-e \(ShellQuote.quote(BackupNames.restoringMarker)) -e \(ShellQuote.quote(BackupNames.replacedMarker))"
        let vgs = groups.enumerated().map { i, g in
            let q = ShellQuote.quote(g)
            return """
                x=$(vgs --noheadings --nosuffix --units b --separator '|' -o vg_free,vg_extent_size \(q) 2>/dev/null \
                | head -n 1 || true); o=$(lvs --noheadings -o lv_name \(q) 2>/dev/null | grep -F \(markers) \
                | tr -d ' ' | tr '\\n' ' ' || true); printf 'vg\\t%d\\t%s\\t%s\\n' \(i) "$x" "$o"
                """
        }
        let out = try host.run((lvs + vgs + ["true"]).joined(separator: "; "), what: "lvs/vgs before the restore")
        var answer: (volumes: [VolumeName: VolumeFacts], groups: [String: GroupFacts]) = ([:], [:])
        for line in out.split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 3, let i = Int(f[1]) else { continue }
            if f[0] == "lv", volumes.indices.contains(i), let facts = VolumeFacts(lvs: f[2]) {
                answer.volumes[volumes[i]] = facts
            } else if f[0] == "vg", f.count == 4, groups.indices.contains(i) {
                let v = f[2].trimmingCharacters(in: .whitespaces).split(separator: "|").map { Int64($0) }
                guard v.count == 2, let free = v[0], let extent = v[1] else { continue }
                let leftovers = f[3].split(separator: " ").map { "\(groups[i])/\($0)" }
                answer.groups[groups[i]] = GroupFacts(freeBytes: free, extentBytes: extent, leftovers: leftovers)
            }
        }
        return answer
    }

    /// Size and data use of thin pools (missing from the answer: lvs said nothing).
    public func poolFacts(_ pools: [VolumeName]) throws(RemoteError) -> [VolumeName: PoolFacts] {
        let script = pools.enumerated().map { i, p in
            """
            x=$(lvs --noheadings --nosuffix --units b --separator '|' -o lv_size,data_percent \
            \(ShellQuote.quote(p.fullName)) 2>/dev/null | head -n 1 || true); printf '%d\\t%s\\n' \(i) "$x"
            """
        }
        let out = try host.run((script + ["true"]).joined(separator: "; "), what: "lvs of thin pools")
        var answer: [VolumeName: PoolFacts] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: "\t").map(String.init)
            guard f.count == 2, let i = Int(f[0]), pools.indices.contains(i) else { continue }
            let v = f[1].trimmingCharacters(in: .whitespaces).split(separator: "|").map(String.init)
            guard v.count == 2, let size = Int64(v[0]) else { continue }
            answer[pools[i]] = PoolFacts(sizeBytes: size, dataPercent: Double(v[1]) ?? 100)
        }
        return answer
    }

    /// lvcreate of `name` with `bytes`, made like `facts` (same stripes, same thin pool, same tags)
    /// or, without, a plain linear LV.
    static func createCommand(_ name: VolumeName, bytes: Int64, like facts: VolumeFacts?) -> String {
        var args = ["lvcreate", "-q", "-y", "-n", ShellQuote.quote(name.lv)]
        if let facts, facts.isThin {
            args += ["-V", "\(bytes)b", "-T", ShellQuote.quote(name.vg + "/" + facts.pool)]
        } else {
            args += ["-L", "\(bytes)b"]
            if let facts, facts.segtype == "striped", facts.stripes > 1 {
                args += ["-i", "\(facts.stripes)", "-I", "\(facts.stripeSizeBytes)b"]
            }
            args.append(ShellQuote.quote(name.vg))
        }
        for tag in facts?.tags ?? [] { args += ["--addtag", ShellQuote.quote(tag)] }
        return args.joined(separator: " ") + " >/dev/null"
    }

    /// Puts `new` in place of `target` (`vg` is theirs). With `replaced`, the target exists and is
    /// renamed to it first; if the second rename fails, it is renamed back.
    public func swap(_ new: VolumeName, into target: VolumeName, keeping replaced: VolumeName?) throws(RemoteError) {
        let vg = ShellQuote.quote(target.vg)
        let (n, t) = (ShellQuote.quote(new.lv), ShellQuote.quote(target.lv))
        guard let replaced else {
            try host.run("lvrename -q \(vg) \(n) \(t) >/dev/null", what: "lvrename \(new.fullName) to \(target.lv)")
            return
        }
        let r = ShellQuote.quote(replaced.lv)
        let back = ShellQuote.quote("\(target.fullName) is back as it was")
        let stuck = ShellQuote.quote(
            "the disk as it was is \(replaced.fullName): lvrename \(target.vg) \(replaced.lv) \(target.lv)")
        try host.run(
            """
            lvrename -q \(vg) \(t) \(r) >/dev/null; \
            if ! lvrename -q \(vg) \(n) \(t) >/dev/null; then \
            if lvrename -q \(vg) \(r) \(t) >/dev/null; then echo \(back) >&2; else echo \(stuck) >&2; fi; exit 5; fi
            """, what: "swapping \(new.fullName) in for \(target.fullName)")
    }

    /// Undoes `swap`: the new LV gets its own name back, the replaced one (if any) its old name.
    public func unswap(_ new: VolumeName, from target: VolumeName, replaced: VolumeName?) throws(RemoteError) {
        let vg = ShellQuote.quote(target.vg)
        var script = "lvrename -q \(vg) \(ShellQuote.quote(target.lv)) \(ShellQuote.quote(new.lv)) >/dev/null"
        if let replaced {
            script += "; lvrename -q \(vg) \(ShellQuote.quote(replaced.lv)) \(ShellQuote.quote(target.lv)) >/dev/null"
        }
        try host.run(script, what: "putting \(target.fullName) back as it was")
    }

    /// Removes a new or replaced LV of a restore, retrying while it is briefly "in use" (udev reads a
    /// device that was just written); nothing when it is gone.
    public func removeRestoreVolume(_ volume: VolumeName) throws(RemoteError) {
        precondition(BackupNames.isOurRestoreLV(volume.lv), "only our own restore LVs are removed")
        try host.run(Self.removeLoop(volume), what: "lvremove \(volume.fullName)")
    }

    /// lvremove with retries, quiet when the LV is not there; fails with LVM's last word.
    static func removeLoop(_ volume: VolumeName) -> String {
        let q = ShellQuote.quote(volume.fullName)
        return """
            e=$(mktemp); trap 'rm -f "$e"' EXIT; \
            for i in 1 2 3 4 5 6 7 8 9 10; do lvs \(q) >/dev/null 2>&1 || exit 0; \
            lvremove -q -f \(q) >/dev/null 2>"$e" && exit 0; sleep 1; done; \
            cat "$e" >&2; exit 1
            """
    }
}
