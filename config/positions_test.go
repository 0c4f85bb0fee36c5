package config

import (
	"reflect"
	"testing"
)

func TestScanKeyLines(t *testing.T) {
	tests := []struct {
		name string
		text string
		want map[string]int
	}{
		{
			name: "tables and arrays of tables",
			text: `top = 1
[server]
listen = ["a",
  "b"]  # comment
[[target]]
name = "x"
  [[target.lun]]
  lun = 0
  [[target.lun]]
  lun = 1
[[target]]
  [target.extra]
  k = 1
  [[target.lun]]
  lun = 0
`,
			want: map[string]int{
				"top": 1, "server": 2, "server.listen": 3, "server.listen[0]": 3, "server.listen[1]": 4,
				"target": 5, "target[0]": 5, "target[0].name": 6,
				"target[0].lun": 7, "target[0].lun[0]": 7, "target[0].lun[0].lun": 8,
				"target[0].lun[1]": 9, "target[0].lun[1].lun": 10,
				"target[1]": 11, "target[1].extra": 12, "target[1].extra.k": 13,
				"target[1].lun": 14, "target[1].lun[0]": 14, "target[1].lun[0].lun": 15,
			},
		},
		{
			name: "multi-line strings do not hide or invent keys",
			text: "a = \"\"\"\nb = 1\n[fake]\n\"\"\"\nc = '''\nx\n'''\nd = \"\"\"q\\\"\"\"\"\"\ne = 'it''s'\nf = 1\n",
			want: map[string]int{"a": 1, "c": 5, "d": 8, "e": 9, "f": 10},
		},
		{
			name: "quoted and dotted keys",
			text: "\"a b\".c = 1\n'lit'  .  d = 2\n[ \"x.y\" . z ]\nw = 3\nesc = \"a\\\"b]\"\n",
			want: map[string]int{
				`"a b"`: 1, `"a b".c`: 1, "lit": 2, "lit.d": 2, `"x.y"`: 3, `"x.y".z`: 3, `"x.y".z.w`: 4, `"x.y".z.esc`: 5,
			},
		},
		{
			name: "inline tables and nested arrays",
			text: "t = [\n  { a = 1, b = { c = [1, [2, 3]] } },\n  { a = 2 },\n]\ndate = 1979-05-27 07:32:00Z # c\nnext = true\n",
			want: map[string]int{
				"t": 1, "t[0]": 2, "t[0].a": 2, "t[0].b": 2, "t[0].b.c": 2, "t[0].b.c[0]": 2,
				"t[0].b.c[1]": 2, "t[0].b.c[1][0]": 2, "t[0].b.c[1][1]": 2,
				"t[1]": 3, "t[1].a": 3, "date": 5, "next": 6,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := scanKeyLines(tc.text)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestLineOfFallsBackToParent(t *testing.T) {
	r := newReporter("f", map[string]int{"target[1]": 7, "target[1].lun[0]": 9})
	for key, want := range map[string]int{
		"target[1].lun[0].size": 9,
		"target[1].name":        7,
		"target[2].name":        0,
		"":                      0,
	} {
		if got := r.lineOf(key); got != want {
			t.Errorf("lineOf(%q) = %d, want %d", key, got, want)
		}
	}
}
