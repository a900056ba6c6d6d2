package plugins

import (
	"os"
	"syscall"
)

// sysStamp returns the parts of a file's identity that os.FileInfo does not give: its device,
// inode and change time (which no one can set back, unlike the modification time).
func sysStamp(fi os.FileInfo) (dev, ino uint64, ctime int64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino, st.Ctim.Nano()
	}
	return 0, 0, 0
}
