// The sidecar runs on Linux only (statx, fsync of directories, posix_fadvise); so do its tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
