package metrics

import "runtime"

var runtimeVersionValue = runtime.Version()
