package udiff

import "testing"

func TestDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng\nh\n"
	b := "a\nb\nc\nD\ne\nf\ng\nh\nI\n"
	got := Diff("old", "new", a, b, 1)
	want := "--- old\n+++ new\n@@ -3,3 +3,3 @@\n c\n-d\n+D\n e\n@@ -8,1 +8,2 @@\n h\n+I\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if Diff("a", "b", a, a, 3) != "" {
		t.Fatal("equal texts gave a diff")
	}
}
