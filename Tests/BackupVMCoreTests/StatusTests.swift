import Foundation
import Testing

@testable import BackupVMCore

/// `backup_vm status` on the real JobRunner, spool and progress files, with a scripted hypervisor:
/// what a running job publishes (phase, disk, bytes, the previous backup's figure as its total), what
/// is left when it ends, and each VM's last result and staleness.
@Suite("status", .tags(.unit))
struct StatusTests {
    /// What the hypervisor's copy saw, from inside the copy.
    final class Seen: @unchecked Sendable {
        var progress: [JobProgress] = []
        var reports: [StatusReport] = []
    }

    @Test func aRunningJobShowsItsPhaseDiskBytesAndEstimate() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let first = try h.backup()
        guard case .succeeded = first.outcome else { throw HarnessError(description: "\(first.outcome)") }
        let seen = Seen()
        let progressDir = h.services.spool.layout.progress
        h.hypervisor.onCall(.copyImage) {
            Thread.sleep(forTimeInterval: 0.7)  // the reporter's thread samples 4 times a second
            for name in (try? Files.visibleEntries(progressDir)) ?? [] where !name.hasSuffix(".tmp") {
                if let p = JobProgress.read(progressDir + "/" + name) { seen.progress.append(p) }
            }
            seen.reports.append(StatusReport.gather(configuration: h.configuration))
        }
        let second = try h.backup()
        guard case .succeeded(let report) = second.outcome else { throw HarnessError(description: "\(second.outcome)") }
        let made = try Manifest.read(backupDirectory: try #require(h.store.catalog.backups(of: h.vm).last).path)
        #expect(seen.progress.count == made.disks.count + 1, "one sample per copy (each disk, the RAM state)")
        let disk = try #require(seen.progress.first)
        #expect(
            disk.phase == .copy && disk.detail == made.disks[0].target && disk.vm == h.vm && disk.host == "kvm1",
            "\(disk)")
        #expect(disk.bytesDone == 0)
        let ram = try #require(seen.progress.last)
        #expect(ram.detail == "ram")
        #expect(
            ram.bytesDone == made.disks.reduce(0) { $0 + $1.storedBytes }, "the disks' files are counted once there")
        let previous = try Manifest.read(backupDirectory: h.store.catalog.backups(of: h.vm)[0].path)
        #expect(ram.bytesTotal == previous.storedBytes, "the total is the previous backup's figure")
        let during = try #require(seen.reports.last)
        #expect(during.running.count == 1 && during.running[0].progress?.phase == .copy)
        #expect(StatusText.render(during).contains("RUNNING 1\n"))
        #expect(StatusText.render(during).contains(" copy "))

        let left = try Files.visibleEntries(progressDir)
        #expect(left.isEmpty, "a finished job leaves no progress file: \(left)")
        let after = StatusReport.gather(configuration: h.configuration)
        #expect(after.running.isEmpty)
        let vm = try #require(after.vms.first)
        #expect(vm.history.lastJob?.status == .done && vm.history.newestBackup?.id == report.backupID)
        #expect(!vm.history.stale && vm.history.consecutiveFailures == 0)
        #expect(!vm.due && (vm.nextWindow ?? .distantPast) > Date(), "backed up in this window; the next opens later")
        #expect(StatusText.render(after).contains("; next window "), "\(StatusText.render(after))")
    }

    @Test func failuresInARowAndStalenessAreCounted() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot, main: "StaleAfterHours=1")
        try h.backup()
        h.hypervisor.failAlways(.save)
        try h.backup()
        try h.backup()
        let now = StatusReport.gather(configuration: h.configuration)
        #expect(now.vms[0].history.consecutiveFailures == 2)
        #expect(!now.vms[0].history.stale)
        let later = StatusReport.gather(configuration: h.configuration, now: Date().addingTimeInterval(7200))
        #expect(later.vms[0].history.stale, "no good backup within StaleAfterHours=1")
        #expect(StatusText.render(later).contains("STALE 2 failed"), "\(StatusText.render(later))")
        let json = try JSONSerialization.jsonObject(with: Data(later.json().utf8)) as? [String: Any]
        let vms = json?["vms"] as? [[String: Any]]
        let history = vms?.first?["history"] as? [String: Any]
        #expect(history?["stale"] as? Bool == true && history?["consecutiveFailures"] as? Int == 2, "\(later.json())")
    }

    @Test func theDailyReportTellsWhatNeedsAttention() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        try h.backup()
        let good = DailyReport.gather(configuration: h.configuration, hours: 24)
        #expect(good.healthy && good.jobsDone == 1 && good.jobsFailed == 0, "\(good.text())")
        #expect(good.text().contains("All well.\n1 backups done"))
        h.hypervisor.failAlways(.save)
        try h.backup()
        try h.backup()
        let bad = DailyReport.gather(configuration: h.configuration, hours: 24)
        #expect(!bad.healthy && bad.jobsDone == 1 && bad.jobsFailed == 2)
        let text = bad.text()
        #expect(text.contains("NEEDS ATTENTION."), "\(text)")
        #expect(text.contains("  \(h.vm): 2 failed in a row, last: save failed on kvm1"), "\(text)")
        #expect(text.contains(" failed ") && text.contains(" done "), "the jobs table: \(text)")
        let old = DailyReport.gather(
            configuration: h.configuration, hours: 1, now: Date().addingTimeInterval(3 * 86400))
        #expect(old.jobs.isEmpty, "nothing finished in that hour")
        #expect(old.text().contains("STALE: newest good backup 3d"), "\(old.text())")
        let json = try JSONSerialization.jsonObject(with: Data(bad.json().utf8)) as? [String: Any]
        #expect(json?["jobsFailed"] as? Int == 2 && (json?["jobs"] as? [Any])?.count == 3)
    }
}
