// libinotifytools (Debian: libinotifytools0-dev) ships no pkg-config file, so the module map links it
// by name. sys/inotify.h gives the IN_* event masks and struct inotify_event.
#include <sys/inotify.h>
#include <inotifytools/inotifytools.h>
