/// Room for the new LVs of a restore, all of which exist at once (every disk is written before any
/// is swapped in): in each volume group, whole extents for every LV that is not thin; in each thin
/// pool, the data its thin LVs will hold (a full pool would stop every volume in it).
struct RestoreSpace {
    let host: RemoteHost

    func check(_ volumes: [VolumeRestore], groups: [String: GroupFacts]) throws {
        let thick = volumes.filter { $0.existing?.isThin != true }
        for vg in Set(thick.map(\.volume.vg)).sorted() {
            guard let group = groups[vg] else { continue }
            let here = thick.filter { $0.volume.vg == vg }
            let needed = here.reduce(Int64(0)) { $0 + group.allocated($1.bytes) }
            if needed > group.freeBytes {
                throw RestoreError.noSpace(
                    .init(
                        place: "volume group \(vg)", host: host.name, freeBytes: group.freeBytes, neededBytes: needed,
                        disks: here.map(describe), leftovers: group.leftovers))
            }
        }
        try checkPools(volumes.filter { $0.existing?.isThin == true }, groups: groups)
    }

    private func checkPools(_ thin: [VolumeRestore], groups: [String: GroupFacts]) throws {
        let pools = Set(thin.compactMap { v in v.existing.map { VolumeName(vg: v.volume.vg, lv: $0.pool) } })
        guard !pools.isEmpty else { return }
        let facts = try LVM(host: host).poolFacts(pools.sorted { $0.fullName < $1.fullName })
        for pool in pools.sorted(by: { $0.fullName < $1.fullName }) {
            let here = thin.filter { $0.volume.vg == pool.vg && $0.existing?.pool == pool.lv }
            let needed = here.reduce(Int64(0)) { $0 + $1.bytes }
            let free = facts[pool]?.freeBytes ?? 0
            if needed > free {
                throw RestoreError.noSpace(
                    .init(
                        place: "thin pool \(pool)", host: host.name, freeBytes: free, neededBytes: needed,
                        disks: here.map(describe), leftovers: groups[pool.vg]?.leftovers ?? []))
            }
        }
    }

    private func describe(_ v: VolumeRestore) -> String { "\(v.target): \(v.new), \(ByteCount(v.bytes))" }
}
