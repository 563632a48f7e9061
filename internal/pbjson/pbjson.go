// Package pbjson turns protobuf messages into plain JSON values the way
// protojson does with UseProtoNames and EmitUnpopulated, except that every
// integer, 64-bit ones included, is a JSON number: protojson writes int64
// and uint64 as strings (for JavaScript's sake), which breaks `jq '.x > 3'`
// and every script that reads triadctl's -o json (docs/admin.md, "JSON
// output").
package pbjson

import (
	"encoding/base64"
	"encoding/json"
	"math"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Value returns m as a JSON-ready value: a map keyed by the proto field
// names, with every field (unset ones as their zero value, unset message
// and optional fields as null; unset oneof members are left out).
func Value(m proto.Message) any {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	return message(r)
}

// Marshal is json.Marshal of Value(m).
func Marshal(m proto.Message) ([]byte, error) { return json.Marshal(Value(m)) }

func message(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && !m.Has(fd) {
			continue // protojson leaves out unset oneof members too
		}
		switch {
		case fd.IsList():
			l := m.Get(fd).List()
			arr := make([]any, 0, l.Len())
			for j := 0; j < l.Len(); j++ {
				arr = append(arr, single(fd, l.Get(j)))
			}
			out[name] = arr
		case fd.IsMap():
			mp := map[string]any{}
			m.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				mp[k.String()] = single(fd.MapValue(), v)
				return true
			})
			out[name] = mp
		case fd.HasPresence() && !m.Has(fd):
			if fd.Kind() == protoreflect.MessageKind || fd.HasOptionalKeyword() {
				out[name] = nil
			} else {
				out[name] = single(fd, m.Get(fd))
			}
		default:
			out[name] = single(fd, m.Get(fd))
		}
	}
	return out
}

func single(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return v.Int()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return v.Uint()
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		switch {
		case math.IsNaN(f):
			return "NaN"
		case math.IsInf(f, 1):
			return "Infinity"
		case math.IsInf(f, -1):
			return "-Infinity"
		}
		return f
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return int32(v.Enum())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return message(v.Message())
	}
	return nil
}
