package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{
		{"lan", "lan", 0}, {"lna", "lan", 1}, {"lan", "lans", 1}, {"", "abc", 3},
		{"kitten", "sitting", 3}, {"bandwith", "bandwidth", 1}, {"ca", "abc", 3},
		{"parnet", "parent", 1}, {"network", "networks", 1},
	} {
		if got := Distance(c.a, c.b); got != c.d {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

func TestClosest(t *testing.T) {
	nets := []string{"lan", "storage", "edge", "wan"}
	for _, c := range []struct{ word, want string }{
		{"lna", "lan"}, {"storge", "storage"}, {"egde", "edge"}, {"default", ""}, {"xy", ""}, {"lan", ""},
	} {
		got, ok := Closest(c.word, nets)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Closest(%q) = %q, %v; want %q", c.word, got, ok, c.want)
		}
	}
	if s := DidYouMean("lna", nets); s != " did you mean 'lan'?" {
		t.Errorf("DidYouMean: %q", s)
	}
}
