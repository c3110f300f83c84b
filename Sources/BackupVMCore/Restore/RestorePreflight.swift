/// Everything a restore asks the hypervisor before it touches anything, and every refusal that
/// follows: where each disk goes (an LV by whichever path the domain names it, a block device that is
/// not an LV, a file), whether an LV there can be replaced (its type, its size), whether each volume
/// group (or thin pool) has room for the new LVs written before the old ones are replaced, and
/// whether a device written in place has exactly the backup's size. Only reads (lvs, vgs, blockdev).
struct RestorePreflight {
    let host: RemoteHost
    /// The restore's ID (its start), in the names of our new and replaced LVs and files.
    let id: String

    /// The disks of `manifest`, each with its way back; `rename` for a copy under a new name, whose
    /// disks never replace a file or LV that exists (it may be another VM's) unless `replacing`.
    func plan(_ manifest: Manifest, rename: (from: String, to: String)?, replacing: Bool = false) throws
        -> [any DiskRestore]
    {
        let images = manifest.disks
        var destinations = try resolveBlocks(
            images, images.map { RestoreDestination($0, formatVersion: manifest.formatVersion) })
        if let rename {
            destinations = try zip(images, destinations).map { image, destination in
                try destination.renamed(from: rename.from, to: rename.to, disk: image.target, host: host.name)
            }
        }
        let planned = Array(zip(images, destinations))
        try refuseShared(planned)
        let volumes = try volumeRestores(planned)
        var restores: [any DiskRestore] = []
        for (i, (image, destination)) in planned.enumerated() {
            switch destination {
            case .file(let path): restores.append(FileRestore(host: host, image: image, path: path, id: id))
            case .volume: restores += volumes[i].map { [$0] } ?? []
            case .device(let path), .block(let path):
                try checkDevice(image, path: path)
                restores.append(DeviceRestore(host: host, image: image, path: path))
            }
        }
        if let rename, !replacing { try refuseExisting(restores, name: rename.to) }
        return restores
    }

    /// A copy's destinations that exist already: LVs LVM reported, files and links found by one question.
    func refuseExisting(_ restores: [any DiskRestore], name: String) throws {
        var existing = restores.compactMap { ($0 as? VolumeRestore)?.existing != nil ? $0.path : nil }
        let files = restores.compactMap { $0 as? FileRestore }.map(\.path)
        if !files.isEmpty {
            let script = files.enumerated().map { i, p in
                "if [ -e \(ShellQuote.quote(p)) ] || [ -L \(ShellQuote.quote(p)) ]; then echo \(i); fi"
            }
            let out = try host.run(script.joined(separator: "; "), what: "checking where the copy's disks go")
            for line in out.split(separator: "\n") {
                guard let i = Int(line.trimmingCharacters(in: .whitespaces)), files.indices.contains(i) else {
                    throw RemoteError.protocolViolation(
                        host: host.name, what: "checking where the copy's disks go", detail: "unexpected line '\(line)'"
                    )
                }
                existing.append(files[i])
            }
        }
        guard existing.isEmpty else {
            throw RestoreError.copyTargetExists(paths: existing, host: host.name, name: name)
        }
    }

    /// Two disks going to one place would overwrite each other (a copy's names can meet: `a` and
    /// `web01-a` both become `web02-a`).
    func refuseShared(_ planned: [(Manifest.StoredImage, RestoreDestination)]) throws {
        var seen: [String: String] = [:]
        for (image, destination) in planned {
            let key = if case .volume(let volume, _) = destination { volume.fullName } else { destination.path }
            if let other = seen[key] { throw unfit(image, destination.path, "is where \(other) goes too") }
            seen[key] = image.target
        }
    }

    /// Block disks of format-1 manifests: an LV if LVM says so, a device if there is one, else an LV to
    /// make if the path has an LV's shape (as restores did before).
    func resolveBlocks(_ images: [Manifest.StoredImage], _ destinations: [RestoreDestination]) throws
        -> [RestoreDestination]
    {
        let paths = destinations.compactMap { if case .block(let p) = $0 { p } else { nil } }
        guard !paths.isEmpty else { return destinations }
        let devices = try LVM(host: host).resolve(paths)
        let sizes = try deviceSizes(paths)
        return try zip(images, destinations).map { image, destination in
            guard case .block(let path) = destination else { return destination }
            if let volume = devices[path]?.volume { return .volume(volume.name, path: path) }
            if sizes[path] != nil { return .device(path: path) }
            if let volume = VolumeName(path: path) { return .volume(volume, path: path) }
            throw unfit(image, path, "does not exist, and is no LV's path that could be made")
        }
    }

    /// The LV disks (by their index), each checked against what LVM says, and the space they need
    /// together.
    func volumeRestores(_ planned: [(Manifest.StoredImage, RestoreDestination)]) throws -> [Int: VolumeRestore] {
        let wanted = planned.enumerated().compactMap { i, pair in
            if case .volume(let volume, let path) = pair.1 { (i, pair.0, volume, path) } else { nil }
        }
        guard !wanted.isEmpty else { return [:] }
        let groups = Array(Set(wanted.map(\.2.vg))).sorted()
        let facts = try LVM(host: host).restoreFacts(volumes: wanted.map(\.2), groups: groups)
        var restores: [Int: VolumeRestore] = [:]
        for (i, image, volume, path) in wanted {
            guard facts.groups[volume.vg] != nil else {
                throw unfit(image, path, "is an LV of volume group \(volume.vg), which \(host.name) does not have")
            }
            let existing = facts.volumes[volume]
            if let existing { try checkReplaceable(image, path, existing) }
            restores[i] = VolumeRestore(
                host: host, image: image, volume: volume, path: path, existing: existing,
                bytes: existing?.sizeBytes ?? image.rawBytes, id: id)
        }
        try RestoreSpace(host: host).check(restores.keys.sorted().compactMap { restores[$0] }, groups: facts.groups)
        return restores
    }

    func checkReplaceable(_ image: Manifest.StoredImage, _ path: String, _ existing: VolumeFacts) throws {
        if existing.isSnapshot || !VolumeFacts.replaceable.contains(existing.segtype) {
            let kind = existing.isSnapshot ? "a snapshot" : "a \(existing.segtype) LV"
            throw unfit(
                image, path,
                "is \(kind); a restore writes a new LV beside it and makes only linear, striped and thin ones."
                    + " Restore under another name (--as) and move the data by hand")
        }
        if existing.sizeBytes < image.rawBytes {
            throw unfit(
                image, path,
                "has \(existing.sizeBytes) bytes, the backup needs \(image.rawBytes); refusing to restore into a"
                    + " smaller LV")
        }
    }

    /// A device written in place must be one, of exactly the backup's size: a larger one would keep
    /// old data past the image, a smaller one cannot take it.
    func checkDevice(_ image: Manifest.StoredImage, path: String) throws {
        guard let size = try deviceSizes([path])[path] else {
            throw unfit(image, path, "is not a block device (a disk that is not an LV is written in place)")
        }
        guard size == image.rawBytes else {
            throw unfit(
                image, path,
                "has \(size) bytes, the backup \(image.rawBytes); a block device that is not an LV is written in place,"
                    + " and only when its size is the backup's")
        }
    }

    /// Every directory the domain's consoles, serial and parallel ports, channels and logs write
    /// into must exist on the host (HostFiles), or the domain is defined but cannot start. Checked,
    /// not made: the owner, mode and labels the operator gives such a directory are not ours to guess.
    func checkDirectories(_ xml: String, name: String) throws {
        let directories = try DomainXML.directoriesWrittenTo(xml)
        guard !directories.isEmpty else { return }
        let script = directories.enumerated().map { i, d in "[ -d \(ShellQuote.quote(d)) ] || echo \(i)" }
        let out = try host.run(script.joined(separator: "; "), what: "checking the directories of \(name)'s consoles")
        for line in out.split(separator: "\n") {
            guard let i = Int(line.trimmingCharacters(in: .whitespaces)), directories.indices.contains(i) else {
                throw RemoteError.protocolViolation(
                    host: host.name, what: "checking directories", detail: "unexpected line '\(line)'")
            }
            throw RestoreError.missingDirectory(path: directories[i], host: host.name, name: name)
        }
    }

    /// The size of each path that is a block device (missing: not one). A block device whose size
    /// cannot be read fails the question (blockdev's message), never reads as "not a device".
    func deviceSizes(_ paths: [String]) throws -> [String: Int64] {
        let script = paths.enumerated().map { i, p in
            let q = ShellQuote.quote(p)
            return
                "s=; if [ -b \(q) ]; then s=$(blockdev --getsize64 \(q)); fi; printf '%d\\t%s\\n' \(i) \"$s\""
        }
        let out = try host.run(script.joined(separator: "; "), what: "blockdev --getsize64")
        var sizes: [String: Int64] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: "\t").map(String.init)
            if f.count == 2, let i = Int(f[0]), paths.indices.contains(i), let size = Int64(f[1]) {
                sizes[paths[i]] = size
            }
        }
        return sizes
    }

    private func unfit(_ image: Manifest.StoredImage, _ path: String, _ what: String) -> RestoreError {
        .unfitDestination(disk: image.target, path: path, host: host.name, what: what)
    }
}
