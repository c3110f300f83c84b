import Foundation

/// Everything under one configuration directory: `backup_vm.d/backup_vm.conf`,
/// `backup_vm.d/sheduler.conf`, `vmsnapshot.d/default` and `vmsnapshot.d/VM_NAME`.
public struct Configuration: Sendable {
    public let directory: String
    public let main: MainConfig
    public let schedule: ScheduleConfig
    public let defaultProfile: SnapshotProfile
    public let profiles: [String: SnapshotProfile]

    public var mainFile: String { Configuration.mainFile(in: directory) }

    public static func mainFile(in dir: String) -> String { dir + "/backup_vm.d/backup_vm.conf" }
    public static func scheduleFile(in dir: String) -> String { dir + "/backup_vm.d/sheduler.conf" }
    public static func profileDir(in dir: String) -> String { dir + "/vmsnapshot.d" }

    /// Findings that do not stop the configuration from loading but that an operator must hear of:
    /// `config check` prints them, the cron tick logs them.
    public var warnings: [ConfigDiagnostic] {
        guard schedule.entries.isEmpty else { return [] }
        // A VM needs a line here to be backed up at all, also by hand; an empty schedule is almost
        // always a mistake (a file that did not parse the way it looks, e.g. with stray line breaks).
        return [
            ConfigDiagnostic(
                file: Configuration.scheduleFile(in: directory), line: 0,
                message: "schedules no VM, so nothing is backed up (not even by hand); "
                    + ScheduleConfig.lineExpectation + ", one line per VM")
        ]
    }

    /// The profile a VM's backup uses: its own file over `default`.
    public func profile(for vm: String) -> SnapshotProfile { profiles[vm] ?? defaultProfile }

    /// `--config-dir` when given, else the current directory when it holds backup_vm.d/ (a checkout),
    /// else /etc/backup_vm. The environment variable BACKUP_VM_CONFIG_DIR sits between the two.
    public static func resolveDirectory(
        explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath
    ) -> String {
        if let explicit { return explicit }
        if let env = environment["BACKUP_VM_CONFIG_DIR"], !env.isEmpty { return env }
        if Files.exists(currentDirectory + "/backup_vm.d") { return currentDirectory }
        return "/etc/backup_vm"
    }

    /// Loads and validates every file, reporting every problem found (not just the first).
    public static func load(directory: String) throws(ConfigError) -> Configuration {
        var diagnostics: [ConfigDiagnostic] = []
        let main = parseFile(mainFile(in: directory), &diagnostics) { text, path in
            MainConfig.parse(text, displayName: path, configDir: directory)
        }
        let schedule =
            parseFile(scheduleFile(in: directory), &diagnostics) { text, path in
                let (s, d) = ScheduleConfig.parse(text, displayName: path)
                return (s, d)
            } ?? ScheduleConfig(entries: [])
        let defaultProfile = loadDefaultProfile(directory, &diagnostics)
        let profiles = loadProfiles(directory, base: defaultProfile, &diagnostics)
        guard diagnostics.isEmpty, let main, let defaultProfile else { throw ConfigError(diagnostics) }
        return Configuration(
            directory: directory, main: main, schedule: schedule,
            defaultProfile: defaultProfile, profiles: profiles)
    }

    /// Reads one file and parses it, collecting the diagnostics of both steps.
    static func parseFile<T>(
        _ path: String, _ diagnostics: inout [ConfigDiagnostic],
        _ parse: (_ text: String, _ path: String) -> (T?, [ConfigDiagnostic])
    ) -> T? {
        switch readText(path) {
        case .success(let text):
            let (value, d) = parse(text, path)
            diagnostics += d
            return value
        case .failure(let d):
            diagnostics.append(d)
            return nil
        }
    }

    static func loadDefaultProfile(_ directory: String, _ diagnostics: inout [ConfigDiagnostic]) -> SnapshotProfile? {
        let path = profileDir(in: directory) + "/default"
        guard Files.exists(path) else {
            let expected = "expected vmsnapshot.d/default with at least Mode= and WorkPath="
            diagnostics.append(ConfigDiagnostic(file: path, line: 0, message: "missing default profile; " + expected))
            return nil
        }
        return parseFile(path, &diagnostics) { text, path in SnapshotProfile.parse(text, displayName: path, base: nil) }
    }

    /// vmsnapshot.d/VM_NAME files over the default (checked for their names even without a default).
    static func loadProfiles(
        _ directory: String, base: SnapshotProfile?, _ diagnostics: inout [ConfigDiagnostic]
    ) -> [String: SnapshotProfile] {
        var profiles: [String: SnapshotProfile] = [:]
        let profileDirectory = profileDir(in: directory)
        var names: [String] = []
        do { names = try Files.visibleEntries(profileDirectory) } catch let e as SystemError where e.errno == ENOENT {
            // No vmsnapshot.d at all: the missing default is reported where it is read.
        } catch {
            // Every VM would silently get the default profile (WorkPath, Mode, ExcludeLVs).
            diagnostics.append(
                ConfigDiagnostic(
                    file: profileDirectory, line: 0, value: "",
                    message: "cannot be listed (\(error)); expected a directory"))
        }
        for name in names.sorted() where name != "default" && !isIgnoredProfileName(name) {
            let path = profileDirectory + "/" + name
            guard SafeName.isValidVMName(name) else {
                diagnostics.append(
                    ConfigDiagnostic(
                        file: path, line: 0, value: name,
                        message: "file name is not a valid VM name; expected \(SafeName.vmExpectation)"))
                continue
            }
            guard let base else { continue }
            profiles[name] = parseFile(path, &diagnostics) { text, path in
                SnapshotProfile.parse(text, displayName: path, base: base)
            }
        }
        return profiles
    }

    /// Package managers' and editors' leftovers beside real profiles are not profiles.
    static func isIgnoredProfileName(_ name: String) -> Bool {
        name.hasSuffix("~") || name.hasSuffix(".bak") || name.hasSuffix(".example") || name.hasSuffix(".md")
            || name.contains(".dpkg-") || name.hasPrefix("README")
    }

    static func readText(_ path: String) -> Result<String, ConfigDiagnostic> {
        guard let data = FileManager.default.contents(atPath: path) else {
            let what = Files.exists(path) ? "cannot be read (permissions?)" : "missing; expected this file"
            return .failure(ConfigDiagnostic(file: path, line: 0, message: what))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            return .failure(ConfigDiagnostic(file: path, line: 0, message: "expected UTF-8 text"))
        }
        return .success(text)
    }
}
