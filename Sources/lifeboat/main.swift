import LifeboatProtect

// `protect` takes its stop signals with sigtimedwait; they must be blocked before any thread
// exists so that every thread inherits the mask (see ProtectService).
if CommandLine.arguments.dropFirst().first == "protect" {
    ProtectService.blockStopSignals()
}
Lifeboat.main()
