import FuzzSupport
import LifeboatVHD

/// A VHD as `disk create --from` imports it: opened (footer, dynamic header, BAT checked) and
/// read whole.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVHD(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let path = FuzzFile.write(UnsafeRawBufferPointer(start: start, count: count), suffix: ".vhd")
    guard let vhd = try? VHDReader(path: path), vhd.sizeBytes <= 64 << 20 else { return 0 }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    defer { buffer.deallocate() }
    var at: Int64 = 0
    while at < vhd.sizeBytes {
        let n = Int(min(Int64(buffer.count), vhd.sizeBytes - at))
        guard (try? vhd.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))) != nil else { break }
        at += Int64(n)
    }
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_vhd_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzVHD)
}
