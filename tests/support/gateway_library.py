"""The library backend the gateway tests route to: its protobuf file, schema and descriptor pool."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import grpc_tools
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_tools import protoc

from services.gateway.descriptors import Schema, build_pool

PROTO = """
syntax = "proto3";

// A library of shelves and books, served to test the gateway.
package test.library.v1;

import "google/api/annotations.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

service Library {
  // Get one book by its resource name.
  rpc GetBook(GetBookRequest) returns (Book) {
    option (google.api.http) = {
      get: "/v1/{name=shelves/*/books/*}"
      additional_bindings { get: "/v1/by-path/{name=**}" }
    };
  }
  rpc ListBooks(ListBooksRequest) returns (ListBooksResponse) {
    option (google.api.http) = { get: "/v1/{parent=shelves/*}/books" };
  }
  rpc CreateBook(CreateBookRequest) returns (Book) {
    option (google.api.http) = { post: "/v1/{parent=shelves/*}/books" body: "book" };
  }
  rpc UpdateBook(UpdateBookRequest) returns (Book) {
    option (google.api.http) = { patch: "/v1/{book.name=shelves/*/books/*}" body: "book" };
  }
  rpc MoveBook(MoveBookRequest) returns (Book) {
    option (google.api.http) = { post: "/v1/{name=shelves/*/books/*}:move" body: "*" };
  }
  // Only the author of a book.
  rpc GetAuthor(GetBookRequest) returns (Book) {
    option (google.api.http) = { get: "/v1/{name=shelves/*/books/*}/author" response_body: "author" };
  }
  rpc DeleteBook(GetBookRequest) returns (google.protobuf.Empty) {
    option (google.api.http) = { delete: "/v1/{name=shelves/*/books/*}" };
  }
  // A few books, one after another.
  rpc WatchShelf(ListBooksRequest) returns (stream Book) {
    option (google.api.http) = { get: "/v1/{parent=shelves/*}:watch" };
  }
  rpc Echo(Everything) returns (Everything) {
    option (google.api.http) = { post: "/v1/echo" body: "*" additional_bindings { get: "/v1/echo" } };
  }
  rpc Fail(FailRequest) returns (google.protobuf.Empty) {
    option (google.api.http) = { post: "/v1/fail" body: "*" };
  }
  rpc NotRouted(GetBookRequest) returns (Book);
}

enum Genre {
  GENRE_UNSPECIFIED = 0;
  FICTION = 1;
  HISTORY = 2;
}
message Author { string name = 1; int32 born = 2; }
message Book {
  string name = 1;
  string title = 2;
  Author author = 3;
  repeated string tags = 4;
  map<string, int32> ratings = 5;
  Genre genre = 6;
  google.protobuf.Timestamp published = 7;
  int64 copies = 8;
}
message GetBookRequest { string name = 1; }
message Range { int32 from = 1; int32 to = 2; }
message Filter { string author = 1; Range year = 2; }
message ListBooksRequest {
  string parent = 1;
  int32 page_size = 2;
  Filter filter = 3;
  repeated Genre genres = 4;
  google.protobuf.Timestamp since = 5;
  google.protobuf.Int32Value min_rating = 6;
  repeated string ids = 7;
}
message ListBooksResponse { repeated Book books = 1; }
message CreateBookRequest { string parent = 1; Book book = 2; string request_id = 3; }
message UpdateBookRequest { Book book = 1; google.protobuf.FieldMask update_mask = 2; }
message MoveBookRequest { string name = 1; string other_shelf = 2; }
message Everything {
  int32 i32 = 1;
  int64 i64 = 2;
  uint32 u32 = 3;
  uint64 u64 = 4;
  float f = 5;
  double d = 6;
  bool b = 7;
  string s = 8;
  bytes by = 9;
  Genre genre = 10;
  repeated int32 ri = 11;
  map<int32, string> m = 12;
  google.protobuf.Duration dur = 13;
  google.protobuf.Struct st = 14;
  google.protobuf.Value v = 15;
  oneof choice {
    string left = 16;
    string right = 17;
  }
  google.protobuf.BoolValue wb = 18;
  repeated Author authors = 19;
}
message FailRequest { string code = 1; string message = 2; string field = 3; }
"""


SERVICE = "test.library.v1.Library"


@functools.cache
def library_files() -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    """The library's file and every file it imports, compiled with source info."""
    googleapis = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "test" / "library" / "v1"
        src.mkdir(parents=True)
        (src / "library.proto").write_text(PROTO)
        out = Path(tmp) / "set.binpb"
        assert protoc.main(["protoc", f"-I{tmp}", f"-I{googleapis}", f"-I{well_known}", "--include_imports",
                            f"--descriptor_set_out={out}", "test/library/v1/library.proto"]) == 0
        return tuple(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)


def library_pool() -> descriptor_pool.DescriptorPool:
    return build_pool(library_files())


def library_schema(backend: str = "library") -> Schema:
    pool = library_pool()
    return Schema(backend, pool, (pool.FindServiceByName(SERVICE),), "test")
