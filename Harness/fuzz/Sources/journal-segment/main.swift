import FuzzSupport
import LifeboatJournal
import SystemPackage

/// A journal segment as recovery and ingest read it: the validity rule decides, or it is refused.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJournalSegment(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    if let scan = try? SegmentReader.scan(bytes, path: FilePath("fuzz.seg")) {
        // What a reader does next with a valid scan: decode every payload it keeps.
        for record in scan.records {
            let payload = UnsafeRawBufferPointer(rebasing: bytes[record.payloadOffset..<(record.payloadOffset + Int(record.header.length))])
            switch record.header.type {
            case .write: _ = WritePayloadHeader.decode(payload)
            case .marker: _ = Marker.decode(payload)
            default: break
            }
        }
    }
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_journal_segment_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzJournalSegment)
}
