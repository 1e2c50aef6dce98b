import FuzzSupport
import Foundation
import LifeboatVault

/// The catalog's text values: a point's digests (JSON: disk id → 32 hex digits) and the
/// retention policy (JSON). Damage is an error, never a default or a trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCatalogValues(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    _ = try? RecoveryPoint.decodeDigests(text)
    _ = try? JSONDecoder().decode(RetentionPolicy.self, from: Data(text.utf8))
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_catalog_values_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzCatalogValues)
}
