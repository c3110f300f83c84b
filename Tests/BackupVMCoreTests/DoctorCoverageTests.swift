import Foundation
import Testing

@testable import BackupVMCore

/// `backup_vm doctor`'s coverage: domains no line in sheduler.conf backs up, lines whose VM exists
/// nowhere, and names from a hypervisor that are not valid VM names, through a stand-in preflight.
@Suite("doctor: coverage", .tags(.unit))
struct DoctorCoverageTests {
    let fixture = ConfigFixture("coverage")
    static let healthy = "libvirt Running against daemon: 9.0.0\nwork /var/lib/backup_vm 2097152\nlvm none\n"

    func doctor(_ answers: [String: String?]) throws -> Doctor {
        let configuration = try Configuration.load(directory: fixture.materialize())
        return Doctor(configuration: configuration) { host, _ throws(RemoteError) in
            guard let answer = answers[host.name], let text = answer else {
                throw RemoteError.connection(host: host.name, detail: "ssh: connect to host \(host.name): refused")
            }
            return Self.healthy + text
        }
    }

    @Test func unscheduledDomainsWarnAndMissingOnesFailWhenEveryHostAnswered() throws {
        let (findings, coverage) = try doctor([
            "kvm1": "domain web01\ndomain orphan1\ndomains listed\n",
            "kvm2": "domain orphan1\ndomain ../etc\ndomains listed\n",
        ]).examine()
        #expect(coverage.unscheduled == ["orphan1"])
        #expect(coverage.missing == ["db01"])
        #expect(coverage.unsafeNames == ["kvm2: \"../etc\""])
        let text = findings.map(\.description)
        #expect(
            text.contains("WARN coverage: orphan1 (on kvm1, kvm2) has no line in sheduler.conf: nobody backs it up"))
        #expect(
            text.contains("FAIL coverage: sheduler.conf schedules db01, which is defined on no hypervisor"), "\(text)")
        #expect(text.contains { $0.hasPrefix("WARN coverage: a domain named kvm2: \"../etc\"") })
    }

    @Test func aHostThatDidNotAnswerMakesMissingOnlyAWarning() throws {
        let (findings, coverage) = try doctor(["kvm1": "domain web01\ndomains listed\n", "kvm2": nil]).examine()
        #expect(coverage.unreachable == ["kvm2"] && coverage.missing == ["db01"])
        let line = findings.first { $0.subject == "coverage" && $0.detail.contains("db01") }
        #expect(line?.ok == true && line?.warning == true, "db01 may be on kvm2: \(String(describing: line))")
        #expect(line?.detail.contains("not asked: kvm2") == true)
    }

    @Test func aHostWhoseVirshFailedIsNotTakenAsEmpty() throws {
        let (_, coverage) = try doctor(["kvm1": "domain web01\ndomain db01\ndomains listed\n", "kvm2": ""]).examine()
        #expect(coverage.unreachable == ["kvm2"], "no 'domains listed' line: its list is unknown, not empty")
        #expect(coverage.missing.isEmpty && coverage.unscheduled.isEmpty)
    }

    @Test func statusShowsTheLastDoctorsCoverage() throws {
        let dir = TempDir("coverage-status")
        let layout = SpoolLayout(root: dir.path + "/spool")
        try layout.prepare()
        let c = Coverage.compute(
            scheduled: ["web01", "db01"], listed: ["kvm1": ["web01", "orphan1"]], unreachable: [],
            now: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))  // JSON keeps seconds
        try c.write(spool: layout)
        #expect(Coverage.read(spool: layout) == c)
        var report = StatusReport(
            generated: Date(), staleAfterHours: 48, queued: [], running: [], vms: [], heldSlots: [], coverage: c)
        let text = StatusText.render(report)
        #expect(text.contains("UNSCHEDULED orphan1 on kvm1: no line in sheduler.conf"), "\(text)")
        #expect(text.contains("MISSING db01: scheduled, defined on no hypervisor"))
        report.coverage = nil
        #expect(StatusText.render(report).contains("COVERAGE unknown (run backup_vm doctor)"))
    }
}
