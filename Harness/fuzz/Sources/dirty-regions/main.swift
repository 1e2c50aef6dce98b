import FuzzSupport
import LifeboatSite
import SystemPackage

/// The dirty-region map as `protect` loads it (state/dirty-regions); one that decodes must
/// encode back to the same bytes (ascending disk ids, no bit past a disk's last region).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDirtyRegions(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let bytes = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(data), count: count))
    if let map = try? DirtyRegions.decode(bytes, path: FilePath("fuzz")) {
        precondition(map.encoded() == bytes, "a decoded dirty-region map does not encode back to its bytes")
        _ = map.regions
    }
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_dirty_regions_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzDirtyRegions)
}
