/// What a job asks for: a backup (the default; a job file without `kind=` is one), a restore test of
/// the VM's newest backup (queued by the cron tick when the profile's RestoreTestEveryDays is due), or a
/// verification of its backups on this server (VerifyEveryDays).
public enum JobKind: String, Sendable, Codable, CaseIterable {
    case backup
    case restoreTest = "restore-test"
    case verify
}
