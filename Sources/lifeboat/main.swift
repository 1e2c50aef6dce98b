import LifeboatProtect

// `protect` and `mount` take their stop signals with sigtimedwait; they must be blocked before any thread
// exists so that every thread inherits the mask (see ProtectService).
if ["protect", "mount"].contains(CommandLine.arguments.dropFirst().first ?? "") {
    ProtectService.blockStopSignals()
}
Lifeboat.main()
