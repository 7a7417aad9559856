resource "aws_s3_bucket" "data" {
  bucket = "example-data"
  acl    = "private"

resource "aws_instance" "web" {
  ami = "ami-123"
