import FuzzSupport
import LifeboatCore
import LifeboatWireFormat

/// A frame as it arrives on the vault's connection, and its header as a request and an answer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireFrame(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: count))
    if let frame = try? WireFrame.decode(bytes) {
        _ = try? WireJSON.decode(WireRequest.self, frame.header)
        _ = try? WireJSON.decode(WireResponse.self, frame.header)
        // What decodes encodes back to the same bytes.
        precondition(frame.encoded() == bytes, "a decoded frame does not encode back")
    }
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_wire_frame_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzWireFrame)
}
