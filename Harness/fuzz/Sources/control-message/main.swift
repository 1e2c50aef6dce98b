import FuzzSupport
import LifeboatCore
import LifeboatSite

/// A request line on protect's control socket.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlMessage(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let line = Array(UnsafeRawBufferPointer(start: start, count: count))
    _ = ControlProtocol.answer(line: line, complete: true, handlers: ControlHandlers(
        mark: { _, _ in (LSN(1), [DiskID(0): Hash128(high: 1, low: 2)]) },
        point: { _, _, _ in (1, nil) }))
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_control_message_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzControlMessage)
}
