// Package inside holds the tests that run inside the test host VM (see
// test/vm): they need a kernel with ipvlan, ipvtap and vhost_net, which the
// machines that develop and test virtap lack. They are built only with the
// build tag virtapvm, by TestIpvtapInVM:
//
//	CGO_ENABLED=0 go test -c -tags virtapvm -o virtap-vm.test ./test/vm/inside
package inside
