import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the test targets (not linked into the product).

/// A seeded generator (LifeboatCore's SplitMix64), so that a failing test reproduces.
public typealias SplitMix = SplitMix64

extension SplitMix64 {
    public init(state: UInt64) { self.init(seed: state) }
}

/// `count` bytes from SplitMix seeded with `seed`.
public func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var g = SplitMix(state: seed)
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        for i in 0..<(count / 8) { raw.storeBytes(of: g.next(), toByteOffset: i * 8, as: UInt64.self) }
    }
    for i in (count / 8 * 8)..<count { out[i] = UInt8(truncatingIfNeeded: g.next()) }
    return out
}

/// Every directory a test makes lives under one per-process parent, removed when the test
/// process exits (Swift Testing has no global teardown; atexit runs after the last test).
private let testRoot: String = {
    let root = NSTemporaryDirectory() + "lifeboat-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: testRoot) }
    return root
}()

/// A new, empty directory for one test.
public func testDirectory(_ tag: String) throws -> String {
    let path = testRoot + "/\(tag)-" + UUID().uuidString.prefix(8)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
