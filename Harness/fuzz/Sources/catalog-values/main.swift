import Foundation
import LifeboatVault

/// The catalog's text values: a point's digests (JSON: disk id → 32 hex digits) and the
/// retention policy (JSON). Damage is an error, never a default or a trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCatalogValues(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    _ = try? RecoveryPoint.decodeDigests(text)
    _ = try? JSONDecoder().decode(RetentionPolicy.self, from: Data(text.utf8))
    return 0
}
