// swift-tools-version:6.0
// libFuzzer targets for every parser of untrusted bytes (Harness/fuzz.sh builds and runs them:
// `swift build -c release -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library`). Each target
// is one executable whose LLVMFuzzerTestOneInput feeds the bytes to one parser: it may refuse
// them with an error, never trap.
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, which differs between checkouts
// (`main`, a CI clone): take it from where this manifest is.
let lifeboat = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized.lastPathComponent

let targets = ["journal-segment", "layer", "base-checksums", "catalog-values", "vhd", "drill-plan", "control-message", "marker", "wire-frame", "dirty-regions"]

let package = Package(
    name: "LifeboatFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: "../..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "LifeboatParsers", package: lifeboat)], path: "Sources/FuzzSupport"),
    ] + targets.map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport", .product(name: "LifeboatParsers", package: lifeboat)],
                          path: "Sources/\(name)")
    }
)
