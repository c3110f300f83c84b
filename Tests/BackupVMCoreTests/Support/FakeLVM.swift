import Foundation

@testable import BackupVMCore

/// LVM over plain files, for a SandboxHost: `root/dev/VG/LV` is an LV (its size is the file's, and
/// lvs gives that file as its lv_path), `root/vg/VG/free` and `.../extent` a volume group. Enough of
/// lvs, vgs, lvcreate, lvrename and lvremove for the restore's scripts, which run for real against
/// it. A new LV is filled with 'X' (a real one holds whatever its extents held). `failOn(cmd, call:)`
/// makes the Nth call of a command fail as LVM would.
struct FakeLVM {
    let root: String

    init(_ dir: TempDir) throws {
        root = dir.path + "/lvm"
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        try SandboxHost.executable(root + "/fake", Self.script(root: root))
    }

    /// The stub actions that make the sandbox's LVM commands this fake.
    var stubs: [String: String] {
        Dictionary(
            uniqueKeysWithValues: ["lvs", "vgs", "lvcreate", "lvrename", "lvremove"].map { cmd in
                (cmd, "exec '\(root)/fake' \(cmd) \"$@\"")
            })
    }

    func addGroup(_ vg: String, freeBytes: Int64, extentBytes: Int64 = 1 << 20) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/vg/" + vg, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/dev/" + vg, withIntermediateDirectories: true)
        try "\(freeBytes)".write(toFile: root + "/vg/\(vg)/free", atomically: true, encoding: .utf8)
        try "\(extentBytes)".write(toFile: root + "/vg/\(vg)/extent", atomically: true, encoding: .utf8)
    }

    /// An existing LV with this content (its size is the content's).
    func addVolume(_ name: VolumeName, content: Data) throws {
        try content.write(to: URL(fileURLWithPath: devicePath(name)))
    }

    func devicePath(_ name: VolumeName) -> String { root + "/dev/\(name.vg)/\(name.lv)" }
    func content(_ name: VolumeName) -> Data? { FileManager.default.contents(atPath: devicePath(name)) }
    func volumes(in vg: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root + "/dev/" + vg)) ?? []).sorted()
    }
    func freeBytes(_ vg: String) -> Int64? {
        (try? String(contentsOfFile: root + "/vg/\(vg)/free", encoding: .utf8)).flatMap {
            Int64($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// The `call`th call of `command` from now on fails (1: the next one).
    func failOn(_ command: String, call: Int = 1) throws {
        try FileManager.default.createDirectory(atPath: root + "/fail", withIntermediateDirectories: true)
        try "\(call)".write(toFile: root + "/fail/" + command, atomically: true, encoding: .utf8)
    }

    private static func script(root: String) -> String {
        """
        #!/bin/bash
        R='\(root)'
        cmd=$1; shift
        if [ -e "$R/fail/$cmd" ]; then
            n=$(($(cat "$R/fail/$cmd") - 1)); echo "$n" > "$R/fail/$cmd"
            [ "$n" != 0 ] || { rm -f "$R/fail/$cmd"; echo "  $cmd: injected failure" >&2; exit 5; }
        fi
        fields=; sep=' '; size=; name=; pool=; pos=()
        while [ $# -gt 0 ]; do
            case "$1" in
            -o) fields=$2; shift ;;
            --separator) sep=$2; shift ;;
            --units|-i|-I|--addtag) shift ;;
            -L|-V) size=${2%b}; shift ;;
            -T) pool=$2; shift ;;
            -n) name=$2; shift ;;
            -*) ;;
            *) pos+=("$1") ;;
            esac
            shift
        done
        split() { # VG/LV, /dev/VG/LV or /dev/mapper/VG-LV -> vg, lv
            local t=$1
            case "$t" in
            /dev/mapper/*) t=${t#/dev/mapper/}; t=${t//--/$'\\001'}; vg=${t%%-*}; lv=${t#*-}
                vg=${vg//$'\\001'/-}; lv=${lv//$'\\001'/-} ;;
            /dev/*) t=${t#/dev/}; vg=${t%%/*}; lv=${t#*/} ;;
            *) vg=${t%%/*}; lv=${t#*/} ;;
            esac
        }
        field() {
            case "$1" in
            vg_name) printf '%s' "$vg" ;; lv_name) printf '%s' "$lv" ;; lv_size) stat -c %s "$R/dev/$vg/$lv" ;;
            lv_attr) printf -- '-wi-a-----' ;; segtype) printf linear ;; stripes) printf 1 ;; stripe_size) printf 0 ;;
            lv_path) printf '%s' "$R/dev/$vg/$lv" ;;
            vg_free) cat "$R/vg/$vg/free" ;; vg_extent_size) cat "$R/vg/$vg/extent" ;;
            esac
        }
        report() { local out='  ' f first=1; IFS=, read -r -a fs <<< "$fields"
            for f in "${fs[@]}"; do [ $first = 1 ] || out+=$sep; first=0; out+=$(field "$f"); done; echo "$out"; }
        missing() { echo "  Failed to find logical volume \\"$vg/$lv\\"" >&2; exit 5; }
        case "$cmd" in
        lvs) t=${pos[0]}
            if [ "${t#/}" = "$t" ] && [ "${t%/*}" = "$t" ]; then
                vg=$t; [ -d "$R/vg/$vg" ] || exit 5
                for f in "$R/dev/$vg"/*; do [ -e "$f" ] || continue; lv=${f##*/}; report; done
            else split "$t"; [ -f "$R/dev/$vg/$lv" ] || missing; report; fi ;;
        vgs) vg=${pos[0]}; [ -d "$R/vg/$vg" ] || { echo "  Volume group \\"$vg\\" not found" >&2; exit 5; }; report ;;
        lvcreate) if [ -n "$pool" ]; then vg=${pool%%/*}; else vg=${pos[0]}; fi; lv=$name
            [ -d "$R/vg/$vg" ] || { echo "  Volume group \\"$vg\\" not found" >&2; exit 5; }
            [ ! -e "$R/dev/$vg/$lv" ] || { echo "  Logical Volume \\"$lv\\" already exists" >&2; exit 5; }
            e=$(cat "$R/vg/$vg/extent"); size=$(( (size + e - 1) / e * e )); free=$(cat "$R/vg/$vg/free")
            [ "$size" -le "$free" ] || { echo "  Volume group \\"$vg\\" has insufficient free space" >&2; exit 5; }
            head -c "$size" /dev/zero | tr '\\0' X > "$R/dev/$vg/$lv"; echo $((free - size)) > "$R/vg/$vg/free" ;;
        lvrename) vg=${pos[0]}; lv=${pos[1]}; [ -f "$R/dev/$vg/$lv" ] || missing
            [ ! -e "$R/dev/$vg/${pos[2]}" ] || { echo "  Logical Volume \\"${pos[2]}\\" already exists" >&2; exit 5; }
            mv "$R/dev/$vg/$lv" "$R/dev/$vg/${pos[2]}" ;;
        lvremove) split "${pos[0]}"; [ -f "$R/dev/$vg/$lv" ] || missing; size=$(stat -c %s "$R/dev/$vg/$lv")
            rm -f "$R/dev/$vg/$lv"; echo $(($(cat "$R/vg/$vg/free") + size)) > "$R/vg/$vg/free" ;;
        esac
        """
    }
}
