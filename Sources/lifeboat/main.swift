import LifeboatProtect

// `protect`, `mount` and the drill's two halves take their stop signals with sigtimedwait; they must be blocked before any thread
// exists so that every thread inherits the mask (see ProtectService).
if ["protect", "mount", "drill", "drill-worker"].contains(CommandLine.arguments.dropFirst().first ?? "") {
    ProtectService.blockStopSignals()
}
runLifeboat()
