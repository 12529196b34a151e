module reprofarm/wine/minidump

go 1.21
