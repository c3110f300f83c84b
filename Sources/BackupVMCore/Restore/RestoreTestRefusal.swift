/// A restore test that cannot start because a domain of the copy's name is somebody else's: not a
/// failure of the backup, so not recorded as one.
public struct RestoreTestRefusal: Error, CustomStringConvertible, Sendable {
    public let description: String
}
