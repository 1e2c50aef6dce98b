import LifeboatJournal

/// A marker record's payload; one that decodes must encode back to the same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMarker(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    if let marker = Marker.decode(bytes) {
        precondition(marker.encoded() == Array(bytes), "a decoded marker does not encode back to its bytes")
    }
    return 0
}
