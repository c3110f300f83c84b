/// What the last `backup_vm restore-test` of a backup found, kept in the backup's verify record.
public struct RestoreTestRecord: Codable, Sendable, Equatable {
    /// When (ISO 8601).
    public var tested: String
    public var ok: Bool
    public var host: String
    /// The throw-away domain's name.
    public var name: String
    /// Seconds from `virsh start` to the sign of life.
    public var bootSeconds: Double?
    /// What showed life: `console` (a line matched RestoreTestReady), `agent` (guest-ping answered), or
    /// `running` (it ran RestoreTestSeconds without stopping).
    public var signal: String?
    /// Why it failed.
    public var problem: String?
}
