# Build stage: compile against Debian bookworm's libraries.
# test/test_dockerfile.py replays this file without a container engine
# (scripts/test.sh runs it): keep the packages here and in scripts/deps.sh in step.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libssl-dev libevent-dev \
      libhiredis-dev libjansson-dev libyaml-dev libcbor-dev node-llhttp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole tree but what .dockerignore leaves out: the Makefile includes
# files from bench/, test/tools/ and wherever the next one goes.
COPY . ./
RUN make -j"$(nproc)" build/portcullis

# Runtime stage: only the shared libraries, an unprivileged user, config mounted.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libevent-2.1-7 libevent-pthreads-2.1-7 \
      libhiredis0.14 libjansson4 libyaml-0-2 libcbor0.8 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin portcullis
COPY --from=build /src/build/portcullis /usr/local/bin/portcullis
USER portcullis
EXPOSE 8443
VOLUME ["/etc/portcullis"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["-c", "/etc/portcullis/portcullis.yaml"]
