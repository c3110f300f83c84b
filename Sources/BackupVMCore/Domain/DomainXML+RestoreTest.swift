import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The domain XML of `backup_vm restore-test`'s throw-away copy.
extension DomainXML {
    /// The XML of a restore test's throw-away copy, made as a new document from an allow-list
    /// (RestoreTestDomain): a new name, no UUID, every restored disk a file (`diskFiles`: target ->
    /// path and format) and every other disk dropped, one serial console into `console` (where the
    /// test looks for its sign of life), the guest agent's channel with a socket of libvirt's
    /// choosing, and nothing else of the original's that could reach its data, network, devices or
    /// memory, or pin the copy to host resources. `marker` (a namespace URI) in <metadata> says the
    /// domain is a test's copy, of `backup`.
    public static func forRestoreTest(
        _ xml: String, name: String, diskFiles: [String: (path: String, format: DomainDisk.Format)], console: String,
        marker: String, backup: String
    ) throws(Problem) -> String {
        let (_, original) = try storedDomain(xml)
        let root = try RestoreTestDomain(original: original).build(name: name, diskFiles: diskFiles, console: console)
        let metadata = XMLElement(name: "metadata")
        let mark = XMLElement(name: "bvm:restore-test", uri: marker)
        mark.addNamespace(XMLNode.namespace(withName: "bvm", stringValue: marker) as! XMLNode)
        mark.addAttribute(RestoreTestDomain.attribute("backup", backup))
        metadata.addChild(mark)
        root.addChild(metadata)
        let doc = XMLDocument(rootElement: root)
        return doc.xmlString(options: [.nodePrettyPrint])
    }

    /// The host files a restore test's copy (its XML as forRestoreTest made it) reads: the kernel,
    /// initrd and firmware of its <os> and the template of its UEFI store. A hostile hypervisor's XML
    /// could name any file of the test's host there (libvirt relabels them for qemu): the test
    /// checks that every user of that host may read them (RestoreTestNeeds).
    public static func filesReadByCopy(_ xml: String) throws(Problem) -> [String] {
        let root = try storedDomain(xml).1
        var files = try elements(root, "os/kernel | os/initrd | os/loader").compactMap(\.stringValue)
        files += try elements(root, "os/nvram").compactMap { $0.attribute(forName: "template")?.stringValue }
        let paths = files.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        if let relative = paths.first(where: { !$0.hasPrefix("/") }) {
            throw Problem(description: "the domain's kernel, initrd or firmware '\(relative)' is not an absolute path")
        }
        return paths
    }

    /// Whether a domain has the guest agent's channel (a restore test then waits for the agent).
    public static func hasAgentChannel(_ xml: String) throws(Problem) -> Bool {
        try elements(try storedDomain(xml).1, "devices/channel").contains(where: RestoreTestDomain.isAgentChannel)
    }
}
