import Foundation
import Testing

@testable import BackupVMCore

@Suite("ssh connection failures, classified from ssh's stderr", .tags(.unit))
struct RemoteErrorTests {
    static let changedKey = """
        @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
        @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
        @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
        IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
        Someone could be eavesdropping on you right now (man-in-the-middle attack)!
        It is also possible that a host key has just been changed.
        The fingerprint for the ED25519 key sent by the remote host is
        SHA256:3mUnw6Tz6RzCNBOJoRNcIa9wCJ0kbkOP7n0H2AtAS1Y.
        Please contact your system administrator.
        Add correct host key in /root/.ssh/known_hosts to get rid of this message.
        Offending ED25519 key in /root/.ssh/known_hosts:3
        Host key for kvm1 has changed and you have requested strict checking.
        Host key verification failed.

        """

    @Test(arguments: [
        ("Host key verification failed.\n", RemoteError.ConnectionFailure.hostKeyUnknown),
        (
            "No ED25519 host key is known for kvm4 and you have requested strict checking.\r\n"
                + "Host key verification failed.\r\n", .hostKeyUnknown
        ),
        (changedKey, .hostKeyChanged),
        ("root@127.0.0.11: Permission denied (publickey).\n", .authenticationRefused),
        ("ssh: connect to host x port 22: Connection refused\n", .unreachable),
        ("ssh: connect to host 10.9.9.9 port 22: Connection timed out\n", .unreachable),
        ("ssh: connect to host 10.9.9.9 port 22: No route to host\n", .unreachable),
        ("ssh: Could not resolve hostname nohost: Name or service not known\n", .unreachable),
        ("kex_exchange_identification: read: Connection reset by peer\n", .unreachable),
        ("mux_client_request_session: read from master failed: Broken pipe\n", .other),
    ])
    func sshFailuresAreClassified(_ stderr: String, _ kind: RemoteError.ConnectionFailure) {
        let error = RemoteError.connection(host: "kvm1", detail: stderr)
        #expect(error.connectionFailure == kind, "\(stderr)")
        let hinted = error.description.contains("`backup_vm doctor` prints the command")
        #expect(hinted == (kind == .hostKeyUnknown || kind == .hostKeyChanged))
    }

    @Test func onlyConnectionErrorsHaveAFailureKind() {
        #expect(
            RemoteError.command(host: "kvm1", what: "w", status: 1, stderr: "Permission denied").connectionFailure
                == nil)
        #expect(RemoteError.launch("no ssh").connectionFailure == nil)
    }
}
