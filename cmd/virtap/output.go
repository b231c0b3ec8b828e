package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// SchemaVersion is the version of the JSON and YAML documents virtap
// prints (status, doctor, policy check, gc, version). It grows when a
// field changes meaning or goes away; new fields do not change it.
const SchemaVersion = 1

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputFlags are --format table|json|yaml and its alias --json.
type outputFlags struct {
	format string
	asJSON bool
}

func (o *outputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.format, "format", formatTable, "output format: table, json or yaml")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "the same as --format json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{formatTable, formatJSON, formatYAML}, cobra.ShellCompDirectiveNoFileComp))
}

// resolve returns the chosen format; a bad one or a contradiction is a
// usage error.
func (o *outputFlags) resolve(cmd *cobra.Command) (string, error) {
	switch o.format {
	case formatTable, formatJSON, formatYAML:
	default:
		return "", usageError{fmt.Errorf("--format %q: allowed: table, json, yaml", o.format)}
	}
	if o.asJSON {
		if cmd.Flags().Changed("format") && o.format != formatJSON {
			return "", usageError{fmt.Errorf("--json and --format %s contradict each other; give one", o.format)}
		}
		return formatJSON, nil
	}
	return o.format, nil
}

// writeData prints v as JSON or YAML. Lists that are nil print as empty
// lists ([]), never as null.
func writeData(w io.Writer, format string, v any) error {
	v = withEmptyLists(v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if format == formatJSON {
		_, err := w.Write(buf.Bytes())
		return err
	}
	// YAML from the JSON document: the same fields, names and order.
	var n yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &n); err != nil {
		return err
	}
	blockStyle(&n)
	ye := yaml.NewEncoder(w)
	ye.SetIndent(2)
	if err := ye.Encode(&n); err != nil {
		return err
	}
	return ye.Close()
}

// blockStyle undoes the flow style that JSON's syntax gives each node.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style &^= yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// withEmptyLists returns a copy of v in which every nil slice reachable
// through structs, pointers, slices and maps is an empty one.
func withEmptyLists(v any) any {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return v
	}
	return fill(rv).Interface()
}

func fill(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Elem().Type())
		p.Elem().Set(fill(v.Elem()))
		return p
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(fill(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			if v.Type().Elem().Kind() == reflect.Uint8 {
				return v // []byte is a string in JSON
			}
			return reflect.MakeSlice(v.Type(), 0, 0)
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(fill(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), fill(it.Value()))
		}
		return out
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(fill(v.Elem()))
		return out
	}
	return v
}
