import LifeboatCore
import LifeboatProtect

/// A request line on protect's control socket.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlMessage(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let line = Array(UnsafeRawBufferPointer(start: start, count: count))
    _ = ControlProtocol.answer(line: line, complete: true) { _, _ in (LSN(1), [DiskID(0): Hash128(high: 1, low: 2)]) }
    return 0
}
