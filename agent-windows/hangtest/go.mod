module reprofarm/hangtest

go 1.21
