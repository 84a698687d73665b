# Shader compilation lives in shaders/CMakeLists.txt (build-time SPIR-V, embedded).
