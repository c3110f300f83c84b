// swift-tools-version: 6.1
import PackageDescription

// Thin executables over one library (BackupVMCore) that holds the domain: configuration, schedule,
// spool, locks, worker pool, pipeline. Dependencies are kept deliberately few: argument parsing and
// the standard logging API, SHA-256 (swift-crypto) for the server-side checksums. libinotifytools comes from Debian through a system module;
// libzstd and libcrypto (the chunk store) through a C target.
let package = Package(
    name: "backup_vm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "backup_vm", targets: ["backup_vm"]),
        .executable(name: "vm_backup_sheduler", targets: ["vm_backup_sheduler"]),
        .executable(name: "backup_vmd", targets: ["backup_vmd"]),
        .executable(name: "bvm-chunk-helper", targets: ["bvm-chunk-helper"]),
        .library(name: "BackupVMCore", targets: ["BackupVMCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CInotifyTools",
            providers: [.apt(["libinotifytools0-dev"])]
        ),
        // Two libc calls Swift's Glibc module does not export (pipe2, closefrom for posix_spawn).
        .target(name: "CShims"),
        // The chunk store's SHA-256 (OpenSSL libcrypto) and zstd, shared by the server and the helper.
        // It names no library itself: the server links them as shared libraries, the helper statically.
        .target(name: "CChunkCodec"),
        // The chunk protocol and the helper's sending loop, without Foundation so that the helper,
        // linked statically, stays small enough to copy to every hypervisor.
        .target(name: "ChunkWire", dependencies: ["CChunkCodec"]),
        .executableTarget(
            name: "bvm-chunk-helper",
            dependencies: ["ChunkWire"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-l:libzstd.a", "-Xlinker", "-l:libcrypto.a"])]
        ),
        .target(
            name: "BackupVMCore",
            dependencies: [
                "CInotifyTools",
                "CShims",
                "ChunkWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            linkerSettings: [.linkedLibrary("zstd"), .linkedLibrary("crypto")]
        ),
        .executableTarget(
            name: "backup_vm",
            dependencies: [
                "BackupVMCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "vm_backup_sheduler",
            dependencies: [
                "BackupVMCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "backup_vmd",
            dependencies: [
                "BackupVMCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A worker process for the multi-process spool tests: the real WorkerPool, Spool and
        // SlotLocks with a scripted job step. Built for the tests only; it is not a product.
        .executableTarget(
            name: "SpoolTestWorker",
            dependencies: ["BackupVMCore"],
            path: "Tests/SpoolTestWorker"
        ),
        .testTarget(
            name: "BackupVMCoreTests",
            dependencies: ["BackupVMCore", "ChunkWire", "CChunkCodec"]
        ),
    ]
)
