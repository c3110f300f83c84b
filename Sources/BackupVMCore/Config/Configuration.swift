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
        let mainPath = mainFile(in: directory)
        var main: MainConfig?
        switch readText(mainPath) {
        case .success(let text):
            let (m, d) = MainConfig.parse(text, displayName: mainPath, configDir: directory)
            main = m
            diagnostics += d
        case .failure(let d): diagnostics.append(d)
        }

        let schedulePath = scheduleFile(in: directory)
        var schedule = ScheduleConfig(entries: [])
        switch readText(schedulePath) {
        case .success(let text):
            let (s, d) = ScheduleConfig.parse(text, displayName: schedulePath)
            schedule = s
            diagnostics += d
        case .failure(let d): diagnostics.append(d)
        }

        let profileDirectory = profileDir(in: directory)
        let defaultPath = profileDirectory + "/default"
        var defaultProfile: SnapshotProfile?
        if !Files.exists(defaultPath) {
            diagnostics.append(
                ConfigDiagnostic(
                    file: defaultPath, line: 0,
                    message: "missing default profile; expected vmsnapshot.d/default with at least Mode= and WorkPath=")
            )
        } else {
            switch readText(defaultPath) {
            case .success(let text):
                let (p, d) = SnapshotProfile.parse(text, displayName: defaultPath, base: nil)
                defaultProfile = p
                diagnostics += d
            case .failure(let d): diagnostics.append(d)
            }
        }

        var profiles: [String: SnapshotProfile] = [:]
        let names = (try? Files.visibleEntries(profileDirectory)) ?? []
        for name in names.sorted() where name != "default" && !isIgnoredProfileName(name) {
            let path = profileDirectory + "/" + name
            guard SafeName.isValidVMName(name) else {
                diagnostics.append(
                    ConfigDiagnostic(
                        file: path, line: 0, value: name,
                        message: "file name is not a valid VM name; expected \(SafeName.vmExpectation)"))
                continue
            }
            guard let base = defaultProfile else { continue }
            switch readText(path) {
            case .success(let text):
                let (p, d) = SnapshotProfile.parse(text, displayName: path, base: base)
                if let p { profiles[name] = p }
                diagnostics += d
            case .failure(let d): diagnostics.append(d)
            }
        }

        guard diagnostics.isEmpty, let main, let defaultProfile else { throw ConfigError(diagnostics) }
        return Configuration(
            directory: directory, main: main, schedule: schedule,
            defaultProfile: defaultProfile, profiles: profiles)
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
