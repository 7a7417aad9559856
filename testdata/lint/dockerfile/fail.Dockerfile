FROM ubuntu:latest
RUN apt-get update && apt-get install -y curl
ADD https://example.com/tool.tar.gz /opt/
RUN curl -sSL https://example.com/install.sh | sh
EXPOSE 22
CMD ["bash"]
