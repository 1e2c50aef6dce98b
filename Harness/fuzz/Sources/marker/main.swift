import FuzzSupport
import LifeboatJournal

/// A marker record's payload; one that decodes must encode back to the same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMarker(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    if let marker = Marker.decode(bytes) {
        precondition(marker.encoded() == Array(bytes), "a decoded marker does not encode back to its bytes")
    }
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_marker_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzMarker)
}
