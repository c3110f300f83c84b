import Foundation
import Testing

@testable import BackupVMCore

/// The command line as people type it: global options before or after the subcommand, a subcommand's
/// name never taken as a VM's, and the documented exit statuses (README "Exit status") without usage
/// text for errors found while running.
@Suite("command line", .tags(.spool), .serialized)
struct CommandLineTests {
    let fixture: ConfigFixture
    let configDir: String

    init() {
        fixture = ConfigFixture("cli")
        configDir = fixture.materialize()
    }

    func backupVM(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        try runTool(Paths.binary("backup_vm"), args)
    }

    let names: Set<String> = ["run", "list", "config", "verify"]

    @Test func optionsBeforeASubcommandMoveAfterItsWords() {
        func order(_ a: [String]) -> [String] {
            ArgumentOrder.subcommandFirst(a, subcommands: names, valueOptions: ["--config-dir"])
        }
        #expect(order(["--config-dir", "D", "list"]) == ["list", "--config-dir", "D"])
        #expect(
            order(["--verbose", "--config-dir", "D", "config", "check"]) == [
                "config", "check", "--verbose", "--config-dir", "D",
            ])
        #expect(
            order(["--config-dir", "list", "list", "web1"]) == ["list", "web1", "--config-dir", "list"],
            "an option's value is not a subcommand")
        #expect(order(["--config-dir", "D", "web1"]) == ["--config-dir", "D", "web1"], "a VM name: the default run")
        #expect(order(["run", "list"]) == ["run", "list"], "run's argument stays a VM name")
        #expect(order(["--config-dir", "D", "run", "list"]) == ["run", "list", "--config-dir", "D"])
        #expect(
            order(["--verbose", "verify", "--", "-odd"]) == ["verify", "--verbose", "--", "-odd"],
            "options stay before --")
        #expect(order(["--verbose", "--", "list"]) == ["--verbose", "--", "list"], "after -- nothing is a subcommand")
        #expect(order([]) == [])
    }

    @Test func globalOptionsWorkBeforeTheSubcommand() throws {
        let before = try backupVM(["--config-dir", configDir, "list"])
        #expect(before.status == 0, "\(before.err)")
        #expect(before.out.contains("web01: 0 backup(s)"), "\(before.out)")
        let after = try backupVM(["list", "--config-dir", configDir])
        #expect(after.out == before.out)
        let nested = try backupVM(["--verbose", "--config-dir", configDir, "config", "check"])
        #expect(nested.status == 0 && nested.out.contains("OK"), "\(nested.out) \(nested.err)")
        let queued = try backupVM(["--config-dir", configDir, "enqueue", "db01"])
        #expect(queued.status == 0 && queued.out.contains("queued db01"), "\(queued.out) \(queued.err)")
    }

    @Test func aSubcommandNameAfterRunIsAVMName() throws {
        let r = try backupVM(["--config-dir", configDir, "run", "list"])
        #expect(r.status == 64, "\(r.err)")
        #expect(r.err.contains("unknown VM 'list'"), "taken as a VM name: \(r.err)")
        #expect(!r.err.contains("USAGE") && !r.err.contains("Usage"), "no usage text for a runtime error: \(r.err)")
    }

    @Test func exitStatusesAreTheDocumentedOnes() throws {
        let usage = try backupVM(["list", "--no-such-option", "--config-dir", configDir])
        #expect(usage.status == 64, "\(usage.err)")
        let badName = try backupVM(["list", "../etc", "--config-dir", configDir])
        #expect(badName.status == 64 && badName.err.contains("not a valid VM name"), "\(badName.err)")
        #expect(!badName.err.contains("Usage"), "\(badName.err)")
        let noBackup = try backupVM(["verify", "web01", "--config-dir", configDir])
        #expect(noBackup.status == 1, "a VM asked for by name with nothing to verify fails: \(noBackup.out)")
        fixture.dir.write("backup_vm.d/sheduler.conf", "web01 * 3\nweb01 Mon 0\n")
        let config = try backupVM(["--config-dir", configDir, "list"])
        #expect(config.status == 2, "\(config.err)")
        #expect(config.err.contains("sheduler.conf:2"), "\(config.err)")
    }
}
