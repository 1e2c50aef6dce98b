import FuzzSupport
import LifeboatVHD

/// A VHD as `disk create --from` imports it: opened (footer, dynamic header, BAT checked) and
/// read whole.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVHD(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
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
