# credgate's container image: built with the same command as a workstation
# build (`make build`, here in release mode with the committed Cargo.lock),
# run as non-root on a distroless base (no shell, no package manager).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN make build CARGO_FLAGS="--release --locked"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/credgate /usr/local/bin/credgate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/credgate"]
CMD ["serve"]
