import FuzzSupport
import LifeboatDrill

/// A drill plan as `lifeboat drill` parses it (YAML through Yams, then the schema).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDrillPlan(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    _ = try? PlanParser.parse(text, path: "fuzz.yaml")
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_drill_plan_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzDrillPlan)
}
