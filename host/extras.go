package host

import (
	"github.com/virtap/virtap/provision/domain"
)

// IfaceRecordAlias keeps the extension files short.
type IfaceRecordAlias = domain.IfaceRecord
