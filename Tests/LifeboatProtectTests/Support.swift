@_exported import LifeboatTestSupport
