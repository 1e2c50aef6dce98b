import LifeboatDrill

/// A drill plan as `lifeboat drill` parses it (YAML through Yams, then the schema).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDrillPlan(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    _ = try? PlanParser.parse(text, path: "fuzz.yaml")
    return 0
}
