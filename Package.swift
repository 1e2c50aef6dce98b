// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Lifeboat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lifeboat", targets: ["lifeboat"]),
        // The parsers of untrusted bytes, for the fuzz package (Harness/fuzz).
        .library(name: "LifeboatParsers", targets: ["LifeboatJournal", "LifeboatVault", "LifeboatVHD", "LifeboatDrill", "LifeboatSite", "LifeboatWireFormat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries from Debian, each imported by exactly one Swift module (CLinux, our own shim, by a few).
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // CRC32C with the SSE4.2 instruction: Debian ships no C library for it (see Docs/decisions).
        .target(name: "CCRC32C"),
        // Linux calls and constants hidden behind _GNU_SOURCE (sync_file_range, pidfd_open, OFD locks).
        .target(name: "CLinux"),

        .target(
            name: "LifeboatCore",
            dependencies: [
                "CCRC32C", "CXXHash", "CZstd", "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "LifeboatJournal", dependencies: ["LifeboatCore", "CLinux"]),
        .target(
            name: "LifeboatVault",
            dependencies: ["LifeboatCore", "LifeboatJournal", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "SystemPackage", package: "swift-system"), .product(name: "Logging", package: "swift-log")]),
        .target(name: "LifeboatVHD", dependencies: ["LifeboatCore", .product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "LifeboatFUSE", dependencies: ["CFuse3", "LifeboatCore", .product(name: "SystemPackage", package: "swift-system"),
                                                   .product(name: "Logging", package: "swift-log")]),
        .target(name: "LifeboatQuiesce", dependencies: ["LifeboatCore"]),
        // A site: its configuration, disks (and their import), checkpoint, digest sidecars, status
        // and the control protocol — the source side's files, no running parts.
        .target(name: "LifeboatSite", dependencies: ["LifeboatCore", "LifeboatJournal", "LifeboatVault", "LifeboatVHD", .product(name: "SystemPackage", package: "swift-system")]),
        // Sealed segments to a vault, behind the transport-neutral `ReplicaTarget` (the local vault is one).
        .target(name: "LifeboatShipping", dependencies: ["LifeboatCore", "LifeboatJournal", "LifeboatSite", "LifeboatVault",
                                                         .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")]),
        // The write path: the protected-disk filesystem, the protection group, recovery, `protect`.
        .target(name: "LifeboatCapture", dependencies: ["LifeboatCore", "LifeboatJournal", "LifeboatSite", "LifeboatShipping", "LifeboatFUSE", "LifeboatVault", "CLinux",
                                                        "LifeboatWire", "LifeboatIdentity",
                                                        .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")]),
        // Who may talk to a vault: its certificate authority, site enrollment, site bundles.
        .target(name: "LifeboatIdentity", dependencies: ["LifeboatCore", .product(name: "Crypto", package: "swift-crypto"),
                                                         .product(name: "X509", package: "swift-certificates"),
                                                         .product(name: "SwiftASN1", package: "swift-asn1"),
                                                         .product(name: "SystemPackage", package: "swift-system")]),
        // The vault over the network: frames, the mutual-TLS server (`vault serve`) and the client
        // (`RemoteVaultReplica`, the second ReplicaTarget).
        // The wire's frames and messages alone (no NIO): what the fuzzer feeds.
        .target(name: "LifeboatWireFormat", dependencies: ["LifeboatCore"]),
        .target(name: "LifeboatWire", dependencies: ["LifeboatCore", "LifeboatJournal", "LifeboatVault", "LifeboatIdentity", "LifeboatShipping", "LifeboatWireFormat", "LifeboatFailover",
                                                     .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOTLS", package: "swift-nio"),
                                                     .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "X509", package: "swift-certificates"),
                                                     .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")]),
        // A recovery point as disks: the point-view filesystem and `mount`.
        .target(name: "LifeboatFailover", dependencies: ["LifeboatCore", "LifeboatJournal", "LifeboatSite", "LifeboatVault", .product(name: "Logging", package: "swift-log"),
                                                        .product(name: "Yams", package: "Yams"),
                                                        .product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "LifeboatPointView", dependencies: ["LifeboatCore", "LifeboatFUSE", "LifeboatVault", "LifeboatVHD",
                                                          .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "LifeboatDrill",
            dependencies: ["LifeboatCore", "LifeboatJournal", "LifeboatFUSE", "LifeboatVault", "LifeboatPointView", "CLinux", .product(name: "Yams", package: "Yams"),
                           .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log"),
                           .product(name: "SystemPackage", package: "swift-system")]),
        .executableTarget(
            name: "lifeboat",
            dependencies: [
                "LifeboatSite", "LifeboatCapture", "LifeboatPointView", "LifeboatFUSE", "LifeboatJournal", "LifeboatCore", "LifeboatVault", "LifeboatVHD",
                "LifeboatDrill", "LifeboatQuiesce", "LifeboatIdentity", "LifeboatWire", "LifeboatShipping", "LifeboatFailover",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // A fixed delay for test hosts' links (C: a TUN device and poll), where the kernel has no netem.
        .executableTarget(name: "lifeboat-delayline", path: "Sources/lifeboat-delayline"),

        .executableTarget(
            name: "lifeboat-bench", dependencies: ["LifeboatVault", "LifeboatJournal", "LifeboatCore", .product(name: "SystemPackage", package: "swift-system")],
            path: "Sources/lifeboat-bench"),

        // The power-loss harness (Harness/power-loss.sh): a workload that records what it was
        // told is durable, and the checker of crash states built from a recorded site filesystem.
        .executableTarget(
            name: "lifeboat-powerloss",
            dependencies: ["LifeboatSite", "LifeboatCapture", "LifeboatVault", "LifeboatJournal", "LifeboatCore", "CLinux",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
                           .product(name: "SystemPackage", package: "swift-system")],
            path: "Sources/lifeboat-powerloss"),

        // Helpers for the test targets (Swift Testing traits, test sites, the `lifeboat` binary); not in the product.
        .target(name: "LifeboatTestSupport", dependencies: ["LifeboatCore"], path: "Sources/LifeboatTestSupport"),

        .testTarget(name: "LifeboatCoreTests", dependencies: ["LifeboatCore", .product(name: "SystemPackage", package: "swift-system")]),
        .testTarget(
            name: "LifeboatJournalTests", dependencies: ["LifeboatJournal", "LifeboatCore", "LifeboatTestSupport", .product(name: "SystemPackage", package: "swift-system")],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "LifeboatVaultTests",
            dependencies: ["LifeboatVault", "LifeboatJournal", "LifeboatCore", "LifeboatTestSupport", .product(name: "SystemPackage", package: "swift-system"),
                           .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Fixtures"]),
        .testTarget(name: "LifeboatQuiesceTests", dependencies: ["LifeboatQuiesce", "LifeboatCore", "LifeboatTestSupport"]),
        .testTarget(name: "LifeboatIdentityTests", dependencies: ["LifeboatIdentity", "LifeboatCore", "LifeboatTestSupport", "lifeboat",
                                                                  .product(name: "SystemPackage", package: "swift-system")],
                    exclude: ["Fixtures"]),
        .testTarget(name: "LifeboatVHDTests", dependencies: ["LifeboatVHD", "LifeboatCore", .product(name: "SystemPackage", package: "swift-system")]),
        .testTarget(
            name: "LifeboatSiteTests",
            dependencies: ["LifeboatSite", "LifeboatCapture", "LifeboatShipping", "LifeboatPointView", "LifeboatJournal", "LifeboatCore", "LifeboatVault",
                           "LifeboatVHD", "LifeboatFUSE", "LifeboatTestSupport", "LifeboatWire", "LifeboatWireFormat", "LifeboatIdentity", "lifeboat",
                           .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "LifeboatDrillTests",
            dependencies: ["LifeboatDrill", "LifeboatSite", "LifeboatVault", "LifeboatCore", "LifeboatTestSupport", "lifeboat"]),
    ]
)

// Warnings are errors in the tests: one inside an #expect expansion can mean the assertion was
// discarded (a test that cannot fail).
for target in package.targets where target.type == .test {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-warnings-as-errors"])]
}
