import Foundation
import Logging
import Testing

@testable import BackupVMCore

@Suite("syslog", .tags(.spool))
struct SyslogTests {
    @Test func linesReachTheSyslogSocket() throws {
        let dir = TempDir("syslog")
        let collector = SyslogCollector(path: dir.path + "/log.sock")
        defer { collector.close() }
        let writer = SyslogWriter(socketPath: collector.path, ident: "backup_vm", facility: .local3)
        var handler = SyslogLogHandler(label: "test", writer: writer)
        handler.logLevel = .debug
        let logger = Logger(label: "test") { _ in handler }
        logger.warning("snapshot left behind", metadata: ["vm": "web01"])
        logger.info("second line\nwith a newline")
        #expect(eventually(timeout: 10) { collector.messages.count == 2 })
        let m = collector.messages
        // local3 = 19, warning = 4: 19*8+4 = 156; info = 6: 158.
        #expect(m[0].hasPrefix("<156>"), "\(m[0])")
        #expect(m[0].contains(" backup_vm[\(getpid())]: warning: snapshot left behind vm=web01"), "\(m[0])")
        #expect(m[1].hasPrefix("<158>") && m[1].contains("second line with a newline"), "\(m[1])")
    }

    @Test func missingSocketIsReportedNotFatal() {
        let writer = SyslogWriter(socketPath: "/nonexistent/dir/log", facility: .daemon)
        writer.send(severity: 6, message: "goes nowhere")
        #expect(writer.isConnected == false)
    }
}
