/// Moves the options typed before a subcommand's name to after its arguments, so global options work
/// before it as people type them: `backup_vm --config-dir DIR config check` is
/// `backup_vm config check --config-dir DIR` (after the words of a nested subcommand too).
///
/// Without this the argument parser sees an option before any subcommand and parses the whole line
/// as the default subcommand (`run`), backing up a VM named "list". Only the first word that is not
/// an option (or an option's value) is looked at: if it names a subcommand it moves to the front;
/// otherwise the line is left as it is (`backup_vm --verbose web01` stays a run of web01, and
/// `backup_vm run list` backs up a VM called list, since "run" is the first word).
public enum ArgumentOrder {
    /// - Parameters:
    ///   - arguments: the command line without the program's name.
    ///   - subcommands: the names the first word may be.
    ///   - valueOptions: global options that take a value as the next word (`--config-dir`).
    public static func subcommandFirst(_ arguments: [String], subcommands: Set<String>, valueOptions: Set<String>)
        -> [String]
    {
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            if word == "--" { return arguments }  // what follows is positional: no subcommand before it
            if valueOptions.contains(word) {
                i += 2
                continue
            }
            if word.hasPrefix("-") {
                i += 1
                continue
            }
            guard subcommands.contains(word), i > 0 else { return arguments }
            let before = Array(arguments[..<i])
            let after = Array(arguments[(i + 1)...])
            // Before a `--` in what follows: after it, they would be positional words.
            let split = after.firstIndex(of: "--") ?? after.count
            return [word] + after[..<split] + before + after[split...]
        }
        return arguments
    }
}
